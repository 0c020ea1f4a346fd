// What the browser bundle has in place of node_builtins.ts: objects that throw on use, naming the Node-only
// function reached (the byte-based loaders, FlexTok.fromBytes and FlexAR.fromBytes, never reach them).
import type * as Crypto from 'node:crypto';
import type * as Fs from 'node:fs';
import type * as Os from 'node:os';
import type * as Path from 'node:path';

function unavailable<T extends object>(name: string): T {
  return new Proxy({} as T, {
    get(_target, key) {
      throw new Error(`${name}.${String(key)} is not available in the browser build: load models from their bytes (FlexTok.fromBytes, FlexAR.fromBytes, Generator.fromBytes)`);
    },
  });
}

export const crypto = unavailable<typeof Crypto>('crypto');
export const fs = unavailable<typeof Fs>('fs');
export const os = unavailable<typeof Os>('os');
export const path = unavailable<typeof Path>('path');
