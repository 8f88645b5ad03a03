"""Model-card templates (Jinja), installed as package data of `gamer_hf.hub_cards`."""
