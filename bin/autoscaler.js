#!/usr/bin/env node
// main() starts `autoscaler agent` without loading yargs or the other commands; everything else runs through the full CLI.
import { main } from "@autoscaler/cli/main";
process.exitCode = await main(process.argv.slice(2));
