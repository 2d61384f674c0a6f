"""Settlement and reconciliation on anvil: every signed payment ends settled, expired, cancelled or disputed."""
