"""What each rate allowance may send and when: windows, pacer, in-flight gate, the sender."""
