"""The domain types: the public answer types and errors, the training configuration, the data contract (events and
catalog frames) and package sizes."""
