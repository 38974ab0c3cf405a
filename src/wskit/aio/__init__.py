"""The asyncio binding of the sans-I/O core: transport, flow control, timers."""
