"""The console's views: thin shells that parse input, call the domain actions and render."""
