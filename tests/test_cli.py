"""test_cli: placeholder."""
