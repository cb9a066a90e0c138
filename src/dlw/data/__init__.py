"""Step 3, preparing the data: loaders, built-in sets and seeded splits."""
