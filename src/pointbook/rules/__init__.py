"""Rule packs: the file format, its loader, the linter and the condition compiler."""
