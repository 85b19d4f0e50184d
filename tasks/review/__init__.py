"""Review import: a review tool's export back into the database, with history."""
