"""Channel adapters: provider wire format <-> InboundMessage / outbound text. No conversation logic."""
