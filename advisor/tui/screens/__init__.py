"""The main screen, its panes (one module each) and the help dialog."""
