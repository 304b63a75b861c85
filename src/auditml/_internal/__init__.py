"""Private machinery: identity, key files, fingerprints, the parallel verifier, PDF, templates, the demo."""
