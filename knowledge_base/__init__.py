"""The knowledge base: hospitals, departments, experts, drugs, health articles and their search."""
