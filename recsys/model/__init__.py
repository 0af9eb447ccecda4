"""The model artifact: the in-memory model (``data``), its manifest, the versioned directory it is written to and read
from (``artifact``), and the models directory as a registry."""
