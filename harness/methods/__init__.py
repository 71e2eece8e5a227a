"""Fine-tuning methods that PEFT lacks, one module each, reached like PEFT's through the method YAML
(`attach: {_target_: harness.methods.<module>.attach, _partial_: true, ...}`)."""
