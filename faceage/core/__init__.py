"""What every stage shares and nothing else: errors, the console, atomic writes, image loading, the file
walker, the table contracts and the stage file names. Imports no other faceage package, and never torch.
"""
