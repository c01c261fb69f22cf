"""Reports written beside a command's results: the arena's ratings chart and its disagreements page."""
