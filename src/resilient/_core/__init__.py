"""The one state model every pattern shares; it imports no pattern module."""
