#!/usr/bin/env node
import { run, processIo } from "@autoscaler/cli";
process.exitCode = await run(process.argv.slice(2), processIo());
