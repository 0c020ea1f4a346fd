// The Node built-ins used by modules that also belong to the browser build (file-path loaders next to byte-based
// ones): imported here once, so that scripts/build-web.mjs can swap this module for node_builtins_browser.ts.
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

export { crypto, fs, os, path };
