"""Private machinery: identity, key files, fingerprints, parallel verify, PDF, templates, demo."""
