"""Built-in strategies (see each module for its exact rules)."""
