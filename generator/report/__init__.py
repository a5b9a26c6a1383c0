"""Reports: a dataset or a load run as one self-contained HTML page (`cdpsim report`)."""
