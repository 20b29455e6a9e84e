"""What a gateway's model can use beyond protocol functions: skills, MCP sources, workers."""
