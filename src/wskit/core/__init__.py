"""The sans-I/O core: bytes in, events and bytes out; no event loop, sockets, clocks or threads."""
