"""perfics routing: pure decision logic (policy, PeRFICS, planning)."""
