// The decoder settings to use for a tokenizer when the caller gives none: pixel-space models (trained here) were
// chosen with 25 Euler steps and no guidance (their model cards); VAE-space models take the CLI's 20 steps with
// guidance 7.5 and APG (the official defaults). Shared by `flextok serve` and the web page, so both decode alike.

export interface DecoderDefaults {
  steps: number;
  guidance: number;
  apg: boolean;
}

export function decoderDefaults(space: 'pixel' | 'vae'): DecoderDefaults {
  return space === 'pixel' ? { steps: 25, guidance: 1, apg: false } : { steps: 20, guidance: 7.5, apg: true };
}
