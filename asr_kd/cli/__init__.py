"""The ``asr-kd`` command line: one subcommand per recipe stage."""
