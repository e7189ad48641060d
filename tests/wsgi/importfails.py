raise ImportError("this module refuses to be imported")
