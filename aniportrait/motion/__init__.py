"""Motion as material: edit, mix, save and preview the mesh / head-pose / landmark sequences (plain NumPy)."""
