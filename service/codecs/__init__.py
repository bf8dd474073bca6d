"""Wire codecs of the Kiln service: bytes on the wire to and from model columns and arrays."""
