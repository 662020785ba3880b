"""Step 5: ansible-runner, check mode first, then for real; the dry run as a Preview."""
