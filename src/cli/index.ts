// Entry point of the `rollcall` binary.
import { main } from './main.js';

await main(process.argv);
