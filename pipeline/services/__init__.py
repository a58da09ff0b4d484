"""Services: commissioning files installed, updated, enabled, disabled and removed at
runtime, as events on the ``services`` topic (schemas/services.avsc). ``state`` is the
pure fold every reader shares (the services projection, the connect role's services
stage)."""
