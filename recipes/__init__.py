"""Built-in recipes (TOML + README per dataset), shipped as package data of seqkit."""
