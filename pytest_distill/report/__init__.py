"""Reports made from records: terminal table, JUnit properties, and files."""
