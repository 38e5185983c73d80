"""Shared helpers and conventions at the bottom of the program: components and settings build on them; they import neither."""
