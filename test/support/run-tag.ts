// The tag of the test run (set by scripts/run-tests.mjs): what a test makes on shared servers carries
// it, so the runner finds leftovers of its own run without touching another run's.
export const TEST_RUN_TAG = /^[a-z0-9]{1,12}$/.test(process.env.TEST_RUN_TAG ?? '') ? (process.env.TEST_RUN_TAG as string) : 'dev';
