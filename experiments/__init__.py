"""One experiment module per paper (plus the GRPO baseline), the CLI, presets and the report writer."""
