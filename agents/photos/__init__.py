"""A jump's photos: stills picked from its footage (select), read with PyAV (extract), found
faces (faces), watermarked and written with a contact sheet (output)."""
