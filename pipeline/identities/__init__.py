"""Device identities: formats, provisioning and credentials of the device registry."""
