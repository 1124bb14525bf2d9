#!/usr/bin/env node
// A committed shim so package managers can link `kiln` before dist/ is built (workspaces install first).
import "../dist/cli/main.js";
