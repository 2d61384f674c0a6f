"""walletd.keys: custody of the wallet's one private key.

``keystore`` encrypts it at rest (scrypt + AES-256-GCM, versioned JSON, 0600,
atomic writes) and imports V3 keystores and hex key files; ``passphrase`` finds
the passphrase (file, systemd credential, TTY; never argv or environment
values); ``signer.LocalSigner`` holds the unlocked key and signs digests.
"""
