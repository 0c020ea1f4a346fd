// The CLI's progress reporting: a redrawn bar on a terminal; in a log or pipe, plain lines at most every
// plainEveryMs while the work lasts, then one summary line (a short step leaves only its summary).
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ProgressBar } from '../src/cli/progress.js';

function sink(isTTY: boolean): { stream: NodeJS.WriteStream; text: () => string } {
  let out = '';
  const stream = { isTTY, write: (s: string) => { out += s; return true; } } as unknown as NodeJS.WriteStream;
  return { stream, text: () => out };
}

describe('ProgressBar', () => {
  it('not on a terminal: plain progress lines while working (none once done), then the summary', () => {
    const s = sink(false);
    const bar = new ProgressBar('tokenize-dataset train', 40, { stream: s.stream, plainEveryMs: 0 });
    bar.update(10);
    bar.update(40);
    bar.done('(123 images/s)');
    const lines = s.text().split('\n').filter(Boolean);
    assert.equal(lines.length, 2, s.text());
    assert.match(lines[0], /^tokenize-dataset train 10\/40 \(25 %\) \([\d.]+ s, ~\d+ s left\)$/);
    assert.match(lines[1], /^tokenize-dataset train 40\/40 in [\d.]+ s \(123 images\/s\)$/);
    assert.doesNotMatch(s.text(), /\r|\x1b/, 'no terminal control characters in a log');
  });

  it('not on a terminal, a short step: only the summary line', () => {
    const s = sink(false);
    const bar = new ProgressBar('decoding', 25, { stream: s.stream });
    for (let i = 1; i <= 25; i++) bar.update(i);
    bar.done();
    assert.match(s.text(), /^decoding 25\/25 in [\d.]+ s\n$/);
  });

  it('on a terminal: a bar redrawn in place', () => {
    const s = sink(true);
    const term = process.env.TERM;
    process.env.TERM = 'xterm';
    try {
      const bar = new ProgressBar('decoding', 4, { stream: s.stream });
      bar.update(4);
      bar.done();
    } finally {
      if (term === undefined) delete process.env.TERM;
      else process.env.TERM = term;
    }
    assert.match(s.text(), /\r\x1b\[2Kdecoding \[#{24}\] 4\/4/);
  });
});
