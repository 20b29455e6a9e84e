"""The gateway pipeline: everything between "a session has new user input" and "here is the answer"."""
