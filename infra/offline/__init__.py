"""The offline tooling: runs the program under mocks, checks it, models its deploy and writes its docs. Imports the wiring; nothing in the program imports it."""
