"""What each rate allowance may send and when: windows, pacer, slow start, the sender."""
