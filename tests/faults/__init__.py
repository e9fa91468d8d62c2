"""A fault-injecting upstream for the fault matrix (``tests/test_fault_matrix.py``): a raw
asyncio HTTP/1.1 server speaking the Anthropic, OpenAI and Gemini wire formats, where
each fault is one small handler (``handlers``)."""
