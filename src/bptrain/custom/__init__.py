"""Your own layers: classes written the book's way (or bptrain's), in a file you name.

`source` imports the file, `book` learns how to call a book-style class, `adapter` makes it a
bptrain layer that trains like a built-in one. `bptrain check` (bptrain.check) holds them
against the reference layers.
"""
