// What the drivers return, mapped: timestamps may come as Date or as text.

export function iso(value: Date | string): string {
  return (value instanceof Date ? value : new Date(value)).toISOString();
}
