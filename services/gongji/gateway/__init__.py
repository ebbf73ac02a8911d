"""The gateway: the national interface's synchronous front door (gongji run gateway)."""
