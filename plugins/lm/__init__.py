"""Language models: membership attacks, canary exposure, tokenizers, the embedded corpus and the LM demo."""
