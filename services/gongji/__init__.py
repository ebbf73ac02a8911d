"""Gongji: streaming settlement for employee medical insurance outpatient mutual aid."""
