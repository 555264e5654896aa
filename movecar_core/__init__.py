"""movecar: the engine of the 114 move-car (114 挪车) call-centre service."""
