"""Side-by-side benchmark of wskit against peer WebSocket libraries and a raw-TCP floor."""
